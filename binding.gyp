{
  "targets": [
    {
      "target_name": "devfuse",
      "sources": ["src/fuse/native/devfuse.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
