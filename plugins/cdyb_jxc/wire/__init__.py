"""The wire contract: profile, values, row rules, SOAP codec, bounded transport and client."""
