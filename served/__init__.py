"""The served path, below serving and training: the catalog view of a model, the query, and the
pure stages that turn a query into a list (`ServedPath`). The server, the Art. 8 review and the
benchmarks all run this one implementation."""
