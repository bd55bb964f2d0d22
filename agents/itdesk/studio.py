"""``langgraph dev`` entry for the IT desk (see ``langgraph.json``)."""

from tether import studio_factory

__all__ = ["make_graph"]

make_graph = studio_factory("itdesk")
