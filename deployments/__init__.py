"""The deployment template, shipped as package data: ``prefect.yaml``.

It is generated from the stage registry by ``tokenmill deploy --write-yaml`` (flows/ops.py) and
registered by ``tokenmill deploy``; see the "Running it like production" and "Monitoring"
sections of the README. Found at run time with ``importlib.resources.files("deployments")``.
"""
