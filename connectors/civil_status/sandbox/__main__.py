"""``python -m connectors.civil_status.sandbox --port 8103 --db var/civil_status.db``"""

from connectors.civil_status.sandbox.app import create_app
from connectors.sandbox_kit.runner import run

if __name__ == "__main__":
    run(create_app, name="civil_status", default_port=8103)
