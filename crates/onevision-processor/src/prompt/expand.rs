//! Placeholder expansion: each `<image>`/`<video>` id becomes as many copies as its media item
//! has feature rows (transformers `LlavaOnevisionProcessor.replace_image_token` /
//! `replace_video_token`, done on ids instead of text; spec §2.5).

use std::ops::Range;

use crate::{Error, Result};

/// Expanded ids and where each media item's placeholders landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    pub ids: Vec<u32>,
    /// `ids[images[k]]` are the copies of the k-th image placeholder.
    pub images: Vec<Range<usize>>,
    /// `ids[videos[k]]` are the copies of the k-th video placeholder.
    pub videos: Vec<Range<usize>>,
}

/// Replaces the k-th `image_id` by `image_counts[k]` copies and the k-th `video_id` by
/// `video_counts[k]` copies, in order. Errors if the number of placeholders of a kind differs
/// from the number of counts, or a count is zero.
pub fn expand_placeholders(
    ids: &[u32],
    image_id: u32,
    image_counts: &[usize],
    video_id: u32,
    video_counts: &[usize],
) -> Result<Vec<u32>> {
    expand_placeholders_with_ranges(ids, image_id, image_counts, video_id, video_counts)
        .map(|e| e.ids)
}

/// [`expand_placeholders`], also returning the range each media item occupies.
pub fn expand_placeholders_with_ranges(
    ids: &[u32],
    image_id: u32,
    image_counts: &[usize],
    video_id: u32,
    video_counts: &[usize],
) -> Result<Expanded> {
    if image_id == video_id {
        return Err(Error::Prompt(format!(
            "the image and video placeholders have the same id {image_id}; they must differ"
        )));
    }
    check_counts("<image>", "image", ids, image_id, image_counts)?;
    check_counts("<video>", "video", ids, video_id, video_counts)?;
    let extra: usize = image_counts.iter().chain(video_counts).sum();
    let mut out = Vec::with_capacity(ids.len() + extra);
    let mut images = Vec::with_capacity(image_counts.len());
    let mut videos = Vec::with_capacity(video_counts.len());
    let (mut next_image, mut next_video) = (image_counts.iter(), video_counts.iter());
    for &id in ids {
        // The counts were checked against the placeholders, so `next()` always has one.
        let (count, ranges) = if id == image_id {
            (next_image.next(), &mut images)
        } else if id == video_id {
            (next_video.next(), &mut videos)
        } else {
            out.push(id);
            continue;
        };
        let n = count.copied().unwrap_or(1);
        ranges.push(out.len()..out.len() + n);
        out.resize(out.len() + n, id);
    }
    Ok(Expanded {
        ids: out,
        images,
        videos,
    })
}

fn check_counts(token: &str, what: &str, ids: &[u32], id: u32, counts: &[usize]) -> Result<()> {
    let found = ids.iter().filter(|&&x| x == id).count();
    if found != counts.len() {
        return Err(Error::Prompt(format!(
            "the prompt has {found} {token} placeholders (id {id}) but {} {what}s were given; \
             each {what} needs exactly one placeholder",
            counts.len()
        )));
    }
    if let Some(k) = counts.iter().position(|&n| n == 0) {
        return Err(Error::Prompt(format!(
            "{what} {k} would expand to 0 tokens; every {what} has at least one feature row"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const I: u32 = 9;
    const V: u32 = 8;

    #[test]
    fn expands_in_order_with_ranges() {
        let ids = [1, I, 2, V, I, 3];
        let e = expand_placeholders_with_ranges(&ids, I, &[2, 3], V, &[1]).unwrap();
        assert_eq!(e.ids, vec![1, I, I, 2, V, I, I, I, 3]);
        assert_eq!(e.images, vec![1..3, 5..8]);
        assert_eq!(e.videos, vec![4..5]);
        assert_eq!(
            expand_placeholders(&ids, I, &[2, 3], V, &[1]).unwrap(),
            e.ids
        );
    }

    #[test]
    fn no_placeholders_is_identity() {
        let ids = [5, 6, 7];
        assert_eq!(
            expand_placeholders(&ids, I, &[], V, &[]).unwrap(),
            ids.to_vec()
        );
    }

    #[test]
    fn count_mismatch_names_both_numbers() {
        let err = expand_placeholders(&[I, 1, I], I, &[4], V, &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("2 <image> placeholders") && err.contains("1 images"),
            "{err}"
        );
        let err = expand_placeholders(&[1], I, &[], V, &[7, 7])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("0 <video> placeholders") && err.contains("2 videos"),
            "{err}"
        );
    }

    #[test]
    fn zero_count_and_equal_ids_are_refused() {
        assert!(expand_placeholders(&[I], I, &[0], V, &[]).is_err());
        assert!(expand_placeholders(&[I], I, &[1], I, &[]).is_err());
    }
}
