from schemas.authority import connector_producer
from services.connector.app import build_app
from services.connector.settings import ConnectorSettings
from services.runtime.shell.serve import serve
from services.runtime.trust.startup import require_trust

settings = ConnectorSettings()
require_trust(
    f"connector-{settings.agency.value}", signs_as=connector_producer(settings.agency), verifies=True
)
serve(build_app(settings), settings.host, settings.port)
