from services.router.app import RouterSettings, build_app
from services.runtime.shell.serve import serve
from services.runtime.trust.startup import require_trust

settings = RouterSettings()
require_trust("router", signs_as="router", verifies=True)
serve(build_app(settings), settings.host, settings.port)
