"""Deployment artefacts, generated from the code's own declarations so that they cannot drift from it.

``components``: every process a deployment runs (name, module, port, Kafka principal, signing producer)
and the DNS-1123 form of a name. ``k8s``: the kustomize base, its components and the Strimzi
``KafkaUser`` resources (from :func:`services.tools.localkafka.access.service_acls`). ``compose``: the
Docker Compose file and its Kafka setup script. ``secrets``: the Secrets a deployment needs and who
supplies each. ``checks``: the offline checks of rendered manifests (names, schemas, environment,
references, commands, volumes), each a function returning a list of problems. ``envfile``: the small
launcher Compose uses to read a process's credentials from the secrets volume.

``python -m services.tools.deploy write`` rewrites the generated files under ``deploy/``;
``python -m services.tools.deploy check`` says which differ (tests/unit/test_deploy_offline.py runs it).
"""
