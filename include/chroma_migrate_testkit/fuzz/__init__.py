"""A fuzz campaign over every file the native reader and the CLI read (issue 15).

Structure-aware mutation (hypothesis drives the choices) of real databases written by each
supported chromadb version; every case runs in a child process under a memory and time
bound, and must end with the right answer or exit 2 naming the damaged file.
"""
