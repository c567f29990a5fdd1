from services.intake.app import IntakeSettings, build_app
from services.runtime.shell.serve import serve

settings = IntakeSettings()
serve(build_app(settings), settings.host, settings.port)
