"""Keycloak run from its own distribution on Maven Central (no Docker): a real OpenID Connect provider
for the tests, and later the local stack, with the realm, clients and demo users of
``deploy/oidc/lienthong-realm.json``."""
