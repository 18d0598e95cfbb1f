"""sslbench harness: config, data, views, backbones, engine, results, CLI."""
