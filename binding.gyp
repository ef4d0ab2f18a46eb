{
  "targets": [
    {
      "target_name": "devfuse",
      "sources": ["src/fuse/native/devfuse.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    },
    {
      "target_name": "flock",
      "sources": ["src/native/flock.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    },
    {
      "target_name": "fileops",
      "sources": ["src/native/fileops.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    },
    {
      "target_name": "sdnotify",
      "sources": ["src/native/sdnotify.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
