//! The file side of `domforge import` / `domforge export`: reading the inputs, deciding how their
//! relative paths read from where the manifest goes, and writing the manifest and a derived board
//! file. Everything else in this crate works on text.

use crate::imagebuilder::{self, ImageBuilderOptions};
use crate::report::{Outcome, Report};
use crate::xl::{self, XlOptions};
use crate::{ImportError, Imported, InputFile, Paths};
use firmware_config::board::{Board, HardwareInventory, builtin_board};
use std::path::{Path, PathBuf};

fn read(path: &Path) -> Result<InputFile, ImportError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ImportError::Input(format!("cannot read {}: {e}", path.display())))?;
    Ok(InputFile::new(path.display().to_string(), text))
}

/// A built-in board by name, or a board file.
pub fn board(name: &str) -> Result<Board, ImportError> {
    let text = match builtin_board(name) {
        Some(t) => t.to_string(),
        None => std::fs::read_to_string(name).map_err(|e| {
            ImportError::Input(format!("`{name}` is neither a built-in board (`domforge boards`) nor a readable board file: {e}"))
        })?,
    };
    Board::parse(&text).map_err(|d| {
        ImportError::Input(format!(
            "board `{name}`: {}",
            d.first().map_or(String::new(), |d| d.message.clone())
        ))
    })
}

fn dir_of(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Paths relative to `input_dir`, as the manifest in `out_dir` must write them.
fn paths_for(input_dir: &Path, out_dir: &Path) -> Paths {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    if canon(input_dir) == canon(out_dir) {
        Paths::default()
    } else {
        Paths {
            prefix: std::path::absolute(input_dir)
                .unwrap_or_else(|_| input_dir.to_path_buf())
                .display()
                .to_string(),
        }
    }
}

fn out_dir(out: Option<&Path>) -> PathBuf {
    out.map_or_else(|| PathBuf::from("."), dir_of)
}

/// `domforge import xl`: kernel paths in xl.cfg are relative to where `xl create` ran (here).
pub fn import_xl(
    files: &[PathBuf],
    board_name: &str,
    name: Option<String>,
    out: Option<&Path>,
) -> Result<Imported, ImportError> {
    let inputs = files
        .iter()
        .map(|p| read(p))
        .collect::<Result<Vec<_>, _>>()?;
    let board = board(board_name)?;
    let opts = XlOptions {
        board_name: board_name.to_string(),
        system_name: name,
        paths: paths_for(Path::new("."), &out_dir(out)),
    };
    xl::import(&inputs, &board, &opts)
}

/// `domforge import imagebuilder`: paths are relative to ImageBuilder's `-d` root (`root`, by default
/// the config's directory). `inventory` reads a board's hardware when it can (for CPUPOOL's CPU names).
pub fn import_imagebuilder(
    config: &Path,
    root: Option<&Path>,
    board_name: Option<&str>,
    name: Option<String>,
    out: Option<&Path>,
    inventory: impl Fn(&Board, &Path) -> Option<HardwareInventory>,
) -> Result<Imported, ImportError> {
    let input = read(config)?;
    let data = imagebuilder::read_config(&input)?;
    let root = root.map_or_else(|| dir_of(config), Path::to_path_buf);
    let out_dir = out_dir(out);
    let mut opts = ImageBuilderOptions {
        system_name: name,
        paths: paths_for(&root, &out_dir),
        ..Default::default()
    };
    if let Some(crate::bash::BashValue::Array(dtbs)) = data.vars.get("DOMU_PASSTHROUGH_DTB") {
        for (i, file) in dtbs {
            let path = root.join(file);
            let paths = std::fs::read(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
                .and_then(|bytes| {
                    xen_paths(&bytes).map_err(|e| format!("{}: {e}", path.display()))
                });
            opts.passthrough_dtb_paths.insert(*i, paths);
        }
    }
    let system = imagebuilder::system_name(&data, &opts);
    let choice = imagebuilder::choose_board(&input, &data, board_name, &system, &opts.paths)?;
    let (board, board_dir) = match &choice.derived {
        Some(text) => (
            Board::parse(text).map_err(|d| {
                ImportError::Input(format!(
                    "the derived board: {}",
                    d.first().map_or(String::new(), |d| d.message.clone())
                ))
            })?,
            out_dir.clone(),
        ),
        None => (self::board(&choice.name)?, PathBuf::from(".")),
    };
    let inv = inventory(&board, &board_dir);
    imagebuilder::import(&input, &data, &choice, &board, inv.as_ref(), &opts)
}

/// The manifest's header: where it came from, and every key that was not carried over.
pub fn header(command: &str, report: &Report) -> String {
    let mut h = format!("Written by `{command}`.\n");
    let lost: Vec<String> = report
        .items
        .iter()
        .filter_map(|i| match &i.outcome {
            Outcome::Unsupported(why) => Some(format!("  {}:{} {}: {why}", i.file, i.line, i.key)),
            _ => None,
        })
        .collect();
    if lost.is_empty() {
        h.push_str("Every key of the input was carried over.\n");
    } else {
        h.push_str("Not carried over (domforge has no equivalent, or does it differently):\n");
        for l in lost {
            h.push_str(&l);
            h.push('\n');
        }
    }
    h
}

/// Writes the manifest (and the derived board file beside it); `None` prints the manifest to
/// stdout instead. Returns the manifest's path when written.
pub fn write(
    imported: &Imported,
    command: &str,
    out: Option<&Path>,
) -> Result<Option<PathBuf>, ImportError> {
    let text = imported
        .manifest
        .to_toml(&header(command, &imported.report));
    let Some(out) = out else {
        print!("{text}");
        if let Some((name, _)) = &imported.board_file {
            eprintln!(
                "note: the manifest refers to a derived board file `{name}`; give -o to write it too"
            );
        }
        return Ok(None);
    };
    let w = |p: &Path, t: &str| {
        std::fs::write(p, t)
            .map_err(|e| ImportError::Input(format!("writing {}: {e}", p.display())))
    };
    if let Some((name, board_text)) = &imported.board_file {
        w(&dir_of(out).join(name), board_text)?;
    }
    w(out, &text)?;
    Ok(Some(out.to_path_buf()))
}

/// The host devices a partial device tree (ImageBuilder's `DOMU_PASSTHROUGH_DTB`) passes through:
/// the `xen,path` of every node under `/passthrough` (docs/misc/arm/passthrough.txt), in tree order.
pub fn xen_paths(dtb: &[u8]) -> Result<Vec<String>, String> {
    let tree = device_tree::DeviceTree::from_dtb(dtb)
        .map_err(|e| format!("not a device tree blob: {e}"))?;
    Ok(tree
        .walk()
        .into_iter()
        .filter(|(path, _)| path.starts_with("/passthrough/"))
        .filter_map(|(_, node)| node.prop_str("xen,path").map(str::to_string))
        .collect())
}
