from services.runtime.serve import serve
from services.tracker.app import TrackerSettings, build_app

settings = TrackerSettings()
serve(build_app(settings), settings.host, settings.port)
