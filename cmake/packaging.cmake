# Install rules and CPack DEB packages: tapio-agent, tapio-controller, tapio-cli.
#
#   cmake -S . -B build && cmake --build build && (cd build && cpack -G DEB)
#
# One component per package. Binaries go under CMAKE_INSTALL_PREFIX (the packages use /usr);
# configuration and units use absolute paths (/etc/tapio, /lib/systemd/system) because that is
# where Debian looks for them whatever the prefix. Maintainer scripts and the conffiles lists
# live in deploy/debian/<package>/. docs/packaging.md describes the result.
include(GNUInstallDirs)

set(TAPIO_DEPLOY_DIR ${PROJECT_SOURCE_DIR}/deploy)
set(TAPIO_SYSTEMD_UNIT_DIR /lib/systemd/system)
set(TAPIO_PACKAGED_COMPONENTS "")

# tapio-agent: only where the BPF build was possible (see ebpf/CMakeLists.txt).
if(TARGET tapio-agent)
	install(TARGETS tapio-agent RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT agent)
	# A packaged default config (deploy/config/agent.yaml) wins over the documented example;
	# chosen when CMake configures (re-run cmake after adding it).
	if(EXISTS ${TAPIO_DEPLOY_DIR}/config/agent.yaml)
		set(TAPIO_AGENT_CONF ${TAPIO_DEPLOY_DIR}/config/agent.yaml)
	else()
		set(TAPIO_AGENT_CONF ${TAPIO_DEPLOY_DIR}/agent.example.yaml)
	endif()
	install(FILES ${TAPIO_AGENT_CONF} DESTINATION /etc/tapio RENAME agent.yaml
		PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ COMPONENT agent)
	# OPTIONAL: checked at install (cpack) time, so a unit added after configuring is packaged.
	install(FILES ${TAPIO_DEPLOY_DIR}/systemd/tapio-agent.service
		DESTINATION ${TAPIO_SYSTEMD_UNIT_DIR} COMPONENT agent OPTIONAL)
	list(APPEND TAPIO_PACKAGED_COMPONENTS agent)
else()
	message(STATUS "packaging: no tapio-agent target, the tapio-agent package is not built")
endif()

install(TARGETS tapio-controller RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT controller)
install(FILES ${TAPIO_DEPLOY_DIR}/profiles/default.yaml DESTINATION /etc/tapio RENAME profile.yaml
	PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ COMPONENT controller)
install(FILES ${TAPIO_DEPLOY_DIR}/systemd/tapio-controller.service
	DESTINATION ${TAPIO_SYSTEMD_UNIT_DIR} COMPONENT controller OPTIONAL)
list(APPEND TAPIO_PACKAGED_COMPONENTS controller)

install(TARGETS tapio RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT cli)
list(APPEND TAPIO_PACKAGED_COMPONENTS cli)

# --- CPack --------------------------------------------------------------------------------
set(CPACK_PACKAGE_NAME tapio)
set(CPACK_PACKAGE_VENDOR "Tapio")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "Tapio maintainers <tapio@localhost>" CACHE STRING
	"Maintainer field of the Debian packages")
# Empty on purpose: CPackDeb would prefix this one summary to every package's description,
# while each package has its own synopsis (first line of its description below).
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON) # packages carry stripped binaries; the build tree keeps the symbols
set(CPACK_COMPONENTS_ALL ${TAPIO_PACKAGED_COMPONENTS})
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_GROUPING IGNORE) # one package per component

set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # <name>_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_RELEASE "" CACHE STRING "Debian revision appended to the version (-N)")
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${CPACK_PACKAGE_CONTACT}")
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON) # Depends from dpkg-shlibdeps, per package
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS OFF)
# Architecture: dpkg --print-architecture on the build host (CPack's default).

set(CPACK_DEBIAN_AGENT_PACKAGE_NAME tapio-agent)
set(CPACK_DEBIAN_AGENT_PACKAGE_SUGGESTS tapio-cli) # tapio recent/watch read its files
set(CPACK_COMPONENT_AGENT_DESCRIPTION "Tapio node agent: kernel failure evidence from eBPF
tapio-agent loads eBPF programs (network, container, storage and node observers),
classifies what they report into named occurrences and writes them to stdout,
rotating files or a tapio-controller. Needs Linux 5.8+ with BTF and root
(or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN).")
set(CPACK_DEBIAN_AGENT_PACKAGE_CONTROL_EXTRA
	${TAPIO_DEPLOY_DIR}/debian/tapio-agent/conffiles
	${TAPIO_DEPLOY_DIR}/debian/tapio-agent/postinst
	${TAPIO_DEPLOY_DIR}/debian/tapio-agent/prerm
	${TAPIO_DEPLOY_DIR}/debian/tapio-agent/postrm)

set(CPACK_DEBIAN_CONTROLLER_PACKAGE_NAME tapio-controller)
set(CPACK_DEBIAN_CONTROLLER_PACKAGE_SUGGESTS tapio-cli)
set(CPACK_COMPONENT_CONTROLLER_DESCRIPTION "Tapio controller: stores and serves a fleet's kernel evidence
tapio-controller accepts occurrences from tapio-agent over TCP, stores them
durably in rotating segment files, aggregates them, answers the HTTP query API
and dashboard, and pushes configuration profiles to the agents.")
set(CPACK_DEBIAN_CONTROLLER_PACKAGE_CONTROL_EXTRA
	${TAPIO_DEPLOY_DIR}/debian/tapio-controller/conffiles
	${TAPIO_DEPLOY_DIR}/debian/tapio-controller/postinst
	${TAPIO_DEPLOY_DIR}/debian/tapio-controller/prerm
	${TAPIO_DEPLOY_DIR}/debian/tapio-controller/postrm)

set(CPACK_DEBIAN_CLI_PACKAGE_NAME tapio-cli)
set(CPACK_COMPONENT_CLI_DESCRIPTION "Tapio operator command line
tapio shows status, recent occurrences, health and queries, from the JSON-lines
files written by tapio-agent or from a tapio-controller.")

set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON) # maintainer scripts 0755, others 0644
set(CPACK_GENERATOR DEB)
include(CPack)
