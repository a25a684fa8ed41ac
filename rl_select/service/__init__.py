"""The HTTP selection service (FastAPI)."""

from rl_select.service.app import SelectRequest, SelectResponse, app_from_env, create_app

__all__ = ["SelectRequest", "SelectResponse", "app_from_env", "create_app"]
