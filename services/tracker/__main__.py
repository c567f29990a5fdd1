from services.runtime.shell.serve import serve
from services.tracker.app import TrackerSettings, build_app

settings = TrackerSettings()
serve(build_app(settings), settings.host, settings.port)
