"""Cloud Functions entry point `fetch_book`: Cloud Scheduler calls it every minute."""

import flask
import functions_framework

from bitso_collector.app import handle


@functions_framework.http
def fetch_book(request: flask.Request) -> flask.Response:
    """Spend this minute's Bitso budget on order book snapshots; answer the run record."""
    return handle(request)
