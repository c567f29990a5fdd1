"""``python -m connectors.land.sandbox --port 8101 --db var/land.db``"""

from connectors.land.sandbox.app import create_app
from connectors.sandbox_kit.runner import run

if __name__ == "__main__":
    run(create_app, name="land", default_port=8101)
