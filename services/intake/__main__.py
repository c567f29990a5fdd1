from services.intake.app import IntakeSettings, build_app
from services.runtime.serve import serve

settings = IntakeSettings()
serve(build_app(settings), settings.host, settings.port)
