"""The gateway: the storefront's one HTTP API (events in, personalised bundles out).

Run it with ``python -m services.gateway``; :func:`services.gateway.wiring.build_app` shows what it is
made of.
"""
