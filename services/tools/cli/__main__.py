from services.tools.cli.main import app

app()
