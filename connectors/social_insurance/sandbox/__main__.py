"""``python -m connectors.social_insurance.sandbox --port 8204 --db var/social_insurance.db``"""

from connectors.sandbox_kit.runner import run
from connectors.social_insurance.sandbox.app import create_app

if __name__ == "__main__":
    run(create_app, name="social_insurance", default_port=8204)
