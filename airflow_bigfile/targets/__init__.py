"""The file being edited: a local file, an S3 object or any other fsspec file, each with
the commits its storage allows."""
