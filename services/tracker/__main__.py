import sys

from services.runtime.auth.signin import SignInNotConfigured
from services.runtime.shell.serve import serve
from services.runtime.trust.startup import require_trust
from services.tracker.app import TrackerSettings, build_app

settings = TrackerSettings()
require_trust("tracker", signs_as="tracker", verifies=True)  # its key signs the replay button's replays
try:
    app = build_app(settings)  # staff sign-in first: without its provider the tracker does not start
except SignInNotConfigured as refusal:
    sys.exit(str(refusal))
serve(app, settings.host, settings.port)
