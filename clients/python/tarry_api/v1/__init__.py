"""Generated from protos/tarry/v1/ by `make protos`; do not edit by hand."""
