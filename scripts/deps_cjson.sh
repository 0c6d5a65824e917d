# deps_cjson.sh — sourced by setup.sh and gpu_workflow.sh: where cJSON is not
# installed, unpack the Debian packages that scripts/fetch_deps.sh put in .deps/
# into .deps/root, point their CMake files at it, and set CJSON_CMAKE_ARGS (for
# cmake) and LD_LIBRARY_PATH (for the programs built). Run from the repository root.
CJSON_CMAKE_ARGS=()
if ls .deps/*.deb >/dev/null 2>&1; then
  _root=$PWD/.deps/root
  mkdir -p "$_root"
  for _deb in .deps/*.deb; do dpkg-deb -x "$_deb" "$_root"; done
  _cfgdir=$(dirname "$(find "$_root" -name cJSONConfig.cmake | head -1)")
  # The packaged CMake files name /usr; point them at the unpacked tree.
  sed -i "s#\"/usr#\"$_root/usr#g" "$_cfgdir"/*.cmake
  CJSON_CMAKE_ARGS=(-DcJSON_DIR="$_cfgdir")
  export LD_LIBRARY_PATH="$_root/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
  unset _root _deb _cfgdir
fi
