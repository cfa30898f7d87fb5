# Install rules: the crshim binary, its criu entry point, the man page, bash completion, the systemd
# unit and the example configuration. Included from the top-level CMakeLists.txt; packaging/build-deb
# installs with these rules into a staging directory.
include(GNUInstallDirs)

# Debian keeps these outside the prefix; absolute paths still honour DESTDIR.
set(CRSHIM_SYSCONFDIR "/etc" CACHE PATH "Where crshim/default.conf is installed")
set(CRSHIM_SYSTEMD_UNITDIR "/lib/systemd/system" CACHE PATH "Where crshim.service is installed")

set(_crshim_pkg_src ${CMAKE_CURRENT_LIST_DIR})
set(_crshim_pkg_out ${PROJECT_BINARY_DIR}/packaging)
file(MAKE_DIRECTORY ${_crshim_pkg_out})

install(TARGETS crshim RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})

# lib/crshim/criu -> ../../sbin/crshim: runtimes can run it by path (runc --criu) or find it first in
# PATH, and a distribution's own criu in sbin stays untouched. Relative, so it works under any prefix.
file(CREATE_LINK ../../${CMAKE_INSTALL_SBINDIR}/crshim ${_crshim_pkg_out}/criu SYMBOLIC)
install(FILES ${_crshim_pkg_out}/criu DESTINATION lib/crshim)

install(FILES ${_crshim_pkg_src}/default.conf DESTINATION ${CRSHIM_SYSCONFDIR}/crshim)
install(FILES ${_crshim_pkg_src}/crshim.bash-completion DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions
        RENAME crshim)

# The unit names the binary by its installed path, which is only known at install time
# (cmake --install --prefix may differ from the configured prefix).
install(CODE "
  file(READ \"${_crshim_pkg_src}/crshim.service.in\" _unit)
  string(REPLACE \"@CRSHIM_SBIN@\" \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_SBINDIR}\" _unit \"\${_unit}\")
  string(REPLACE \"@CRSHIM_CONF@\" \"${CRSHIM_SYSCONFDIR}/crshim/default.conf\" _unit \"\${_unit}\")
  file(WRITE \"${_crshim_pkg_out}/crshim.service\" \"\${_unit}\")
")
install(FILES ${_crshim_pkg_out}/crshim.service DESTINATION ${CRSHIM_SYSTEMD_UNITDIR})

# crshim(8) from docs/crshim.8.md with go-md2man, gzip'ed without name or timestamp (reproducible).
# The date follows SOURCE_DATE_EPOCH when it is set.
string(TIMESTAMP CRSHIM_MAN_DATE "%Y-%m-%d" UTC)
configure_file(${PROJECT_SOURCE_DIR}/docs/crshim.8.md ${_crshim_pkg_out}/crshim.8.md @ONLY)
find_program(CRSHIM_GO_MD2MAN go-md2man)
find_program(CRSHIM_GZIP gzip)
if(CRSHIM_GO_MD2MAN AND CRSHIM_GZIP)
  add_custom_command(
    OUTPUT ${_crshim_pkg_out}/crshim.8.gz
    COMMAND ${CRSHIM_GO_MD2MAN} -in crshim.8.md -out crshim.8
    COMMAND ${CRSHIM_GZIP} -9 -n -f crshim.8
    DEPENDS ${_crshim_pkg_out}/crshim.8.md
    WORKING_DIRECTORY ${_crshim_pkg_out}
    COMMENT "Generating crshim.8.gz")
  add_custom_target(crshim_man ALL DEPENDS ${_crshim_pkg_out}/crshim.8.gz)
  install(FILES ${_crshim_pkg_out}/crshim.8.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
else()
  message(STATUS "go-md2man or gzip not found: the crshim(8) man page is neither built nor installed")
endif()
