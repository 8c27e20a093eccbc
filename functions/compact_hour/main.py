"""Cloud Functions entry point `compact_hour`: one closed hour of snapshots to Parquet, hourly."""

import flask
import functions_framework

from bitso_archive.compact_app import handle


@functions_framework.http
def compact_hour(request: flask.Request) -> flask.Response:
    """Compact one closed hour of snapshots into one Parquet file per book."""
    return handle(request)
