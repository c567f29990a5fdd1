from services.runtime.shell.serve import serve
from services.runtime.trust.startup import require_trust
from services.tracker.app import TrackerSettings, build_app

settings = TrackerSettings()
require_trust("tracker", signs_as="tracker", verifies=True)  # its key signs the replay button's replays
serve(build_app(settings), settings.host, settings.port)
