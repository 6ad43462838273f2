"""geoal.labelstudio: label a round in a Label Studio server over its HTTP API.

``push_round`` uploads a round's chips as tasks with the model's detections as
predictions; ``pull_labels`` brings the submitted annotations back through the same
validated, all-or-nothing import as files. The server runs in its own virtualenv
(``scripts/setup.sh`` installs it in ``.venv-labelstudio``); geoal only speaks HTTP.

    with connect("http://localhost:8080") as client:   # token from $LABEL_STUDIO_API_KEY
        push_round(project, client)
        ...                                             # annotators work in the browser
        pull_labels(project, client)
"""

from geoal.labelstudio.client import (
    Client,
    LabelStudioError,
    LabelStudioNotFound,
    connect,
    resolve_token,
)
from geoal.labelstudio.sync import (
    PullReport,
    PushReport,
    pull_labels,
    pull_summary,
    push_round,
    push_summary,
)

__all__ = [
    "Client",
    "LabelStudioError",
    "LabelStudioNotFound",
    "PullReport",
    "PushReport",
    "connect",
    "pull_labels",
    "pull_summary",
    "push_round",
    "push_summary",
    "resolve_token",
]
