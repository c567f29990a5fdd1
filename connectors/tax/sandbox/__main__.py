"""``python -m connectors.tax.sandbox --port 8102 --db var/tax.db`` (rates: ``TAX_SANDBOX_*``)."""

from connectors.sandbox_kit.runner import run
from connectors.tax.sandbox.app import create_app

if __name__ == "__main__":
    run(create_app, name="tax", default_port=8102)
