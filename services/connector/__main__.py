from services.connector.app import build_app
from services.connector.settings import ConnectorSettings
from services.runtime.shell.serve import serve

settings = ConnectorSettings()
serve(build_app(settings), settings.host, settings.port)
