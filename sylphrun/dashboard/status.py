"""What the dashboard shows about hot reload, handed over by `sylphrun dev`: the
reloader's own record (`model.ReloadStatus`), importable from here as before."""

from sylphrun.model import ReloadStatus

__all__ = ["ReloadStatus"]
