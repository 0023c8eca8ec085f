# Shortcuts for developers; scripts/ has the real commands.
.PHONY: up test lint bench
up:
	bash scripts/up.sh --data /tmp/zk
test:
	bash scripts/test.sh
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
bench:
	bash bench/run.sh
