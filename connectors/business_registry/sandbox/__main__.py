"""``python -m connectors.business_registry.sandbox --port 8205 --db var/business_registry.db``"""

from connectors.business_registry.sandbox.app import create_app
from connectors.sandbox_kit.runner import run

if __name__ == "__main__":
    run(create_app, name="business_registry", default_port=8205)
