from relaypacs.cli import app

app()
