from streamlet.cli import app

app()
