"""Authentication shared by the deployed services: OAuth 2.0 bearer tokens checked against the
issuer's keys."""
