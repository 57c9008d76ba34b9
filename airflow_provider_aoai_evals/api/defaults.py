"""Default values shared by the api layer and the connection form.

This module imports nothing, so the connection form (read at provider discovery) can use the same numbers
as the client without pulling in the api layer's dependencies.
"""

from __future__ import annotations

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0
DEFAULT_ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"
FLAVORS = ("openai", "azure")
AZURE_API_VERSIONS = ("v1", "preview")
