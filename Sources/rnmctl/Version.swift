import CRNMVersion

enum RNMVersionInfo {
    static let version = String(cString: rnm_version())
}
