from mstool.cli.main import cli

cli()
