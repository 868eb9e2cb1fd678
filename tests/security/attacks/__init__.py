"""The attack catalogue's rows, one module per attack family (the rows' ``area``)."""
