from services.intake.app import IntakeSettings, build_app
from services.runtime.shell.serve import serve
from services.runtime.trust.startup import require_trust

settings = IntakeSettings()
require_trust("intake", signs_as="intake", verifies=False)  # it reads no events
serve(build_app(settings), settings.host, settings.port)
