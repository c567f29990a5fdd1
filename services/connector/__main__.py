from services.connector.app import ConnectorSettings, build_app
from services.runtime.serve import serve

settings = ConnectorSettings()
serve(build_app(settings), settings.host, settings.port)
