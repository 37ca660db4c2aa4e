from cl_metadata.cli import run

run()
