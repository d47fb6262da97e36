"""coralpi controller: plan, fetch, apply and report for Raspberry Pi + Coral fleets."""

__version__ = "0.1.0"
