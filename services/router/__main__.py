from services.router.app import RouterSettings, build_app
from services.runtime.shell.serve import serve

settings = RouterSettings()
serve(build_app(settings), settings.host, settings.port)
