"""The provider's pages in the Airflow UI (Airflow 3.1+): an *Evals* page in the navigation and an *Eval run*
tab on task instances, served by the api-server as a plugin's FastAPI app under ``/aoai-evals``.

This package may import Airflow (the ``api`` layer may not). Nothing is imported here, so reading the
provider info (which names the option in :mod:`.settings`) does not load FastAPI or the auth manager.
"""
