"""Data fetch, training and export of the embedded models (docs/DESIGN.md §1 `training/`).

Data is fetched from npm and Debian packages only here, when someone runs `studio train`; the
studio never fetches anything at run time. Imports only core and models; torch is imported by the
recipe modules, which the CLI loads lazily."""
