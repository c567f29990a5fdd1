"""``python -m connectors.residence.sandbox --port 8203 --db var/residence.db``"""

from connectors.residence.sandbox.app import create_app
from connectors.sandbox_kit.runner import run

if __name__ == "__main__":
    run(create_app, name="residence", default_port=8203)
