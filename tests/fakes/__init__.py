"""Local stand-ins for outside services (payment providers, gateways), served over real HTTP
on loopback so boxoffice's real clients talk to them by base URL."""
